"""Collecting from the running Linux system (``collect --live``).

:mod:`.blockdev` reads the kernel's view of mounts and block devices
(``/proc/self/mountinfo``, ``/sys/dev/block``, ``slaves``/``holders``), :mod:`.plan`
decides which devices are read and refuses an output on them, :mod:`.recheck`
re-reads an item's record after its copy to see whether it changed while read.
"""
