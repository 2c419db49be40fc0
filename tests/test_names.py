"""Tests of the reversible, extraction-safe member names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selective_imager.container.names import (
    MAX_SEGMENT_BYTES,
    IrreversibleNameError,
    decode_member_path,
    encode_member_path,
    is_hashed_name,
    is_portable_segment,
)

DEVICE = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{b}{d}" for b in ("COM", "LPT") for d in "0123456789¹²³"
}


def assert_safe(name: str) -> None:
    """Every segment is creatable on Windows, Linux and macOS."""
    for seg in name.split("/"):
        assert seg not in ("", ".", "..")
        assert len(seg.encode("utf-8")) <= MAX_SEGMENT_BYTES
        assert not any(c in '<>:"|?*\\' for c in seg)
        assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in seg)
        assert seg[-1] not in ". "
        assert seg.split(".", 1)[0].rstrip(" ").upper() not in DEVICE
    name.encode("utf-8")  # no lone surrogates left


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("p3", "Windows/System32/config/SYSTEM"), "files/p3/Windows/System32/config/SYSTEM"),
        (("p3", "$Extend/$UsnJrnl", "$J"), "files/p3/$Extend/$UsnJrnl%3A$J"),
        (("p1", "CON"), "files/p1/%43ON"),
        (("p1", "dir/nul.txt"), "files/p1/dir/%6Eul.txt"),
        (("p1", "Com1.log"), "files/p1/%43om1.log"),
        (("p1", "COM10"), "files/p1/COM10"),
        (("p1", 'a<b>c|d?e*f"g\\h'), "files/p1/a%3Cb%3Ec%7Cd%3Fe%2Af%22g%5Ch"),
        (("p1", "100%"), "files/p1/100%25"),
        (
            ("p3", "Logs/Microsoft-Windows-TerminalServices-LocalSessionManager%4Operational.evtx"),
            "files/p3/Logs/Microsoft-Windows-TerminalServices-LocalSessionManager%4Operational.evtx",
        ),
        (("p1", "50%off"), "files/p1/50%off"),
        (("p1", "%41"), "files/p1/%2541"),
        (("p1", "%+x/%H"), "files/p1/%25+x/%25H"),
        (("p1", "%%"), "files/p1/%%25"),
        (("p1", "trail./space "), "files/p1/trail%2E/space%20"),
        (("p1", "../x/./y"), "files/p1/%2E%2E/x/%2E/y"),
        (("p1", "a//b"), "files/p1/a/%/b"),
        (("p1", "tab\there\x7f"), "files/p1/tab%09here%7F"),
        (("p1", "linux:colon"), "files/p1/linux%3acolon"),
        (("p2/bitlocker", "x"), "files/p2%2Fbitlocker/x"),
        (("p1", "Ünïcødé/日本語.txt"), "files/p1/Ünïcødé/日本語.txt"),
        (("p1", ""), "files/p1/%"),
    ],
)
def test_examples(args, expected):
    name = encode_member_path(*args)
    assert name == expected
    assert_safe(name)
    volume, path, *stream = args
    assert decode_member_path(name) == (volume, path, stream[0] if stream else "")


def test_colon_in_name_differs_from_stream():
    with_stream = encode_member_path("p1", "a", "b")
    colon_name = encode_member_path("p1", "a:b")
    assert with_stream != colon_name
    assert decode_member_path(with_stream) == ("p1", "a", "b")
    assert decode_member_path(colon_name) == ("p1", "a:b", "")


def test_stream_needs_encoding_too():
    name = encode_member_path("p1", "file", "str/eam.")
    assert_safe(name)
    assert decode_member_path(name) == ("p1", "file", "str/eam.")


def test_lone_surrogates_round_trip():
    args = ("p1", "bad\udc80name/\ud800", "s\udfff")
    name = encode_member_path(*args)
    assert_safe(name)
    assert decode_member_path(name) == args


def test_long_segment_is_split_reversibly():
    long_segment = "é" * 200 + "CON.txt" + "x" * 300 + "."
    name = encode_member_path("p1", f"dir/{long_segment}", "stream" * 60)
    assert_safe(name)
    assert name.count("%+") >= 2
    assert decode_member_path(name) == ("p1", f"dir/{long_segment}", "stream" * 60)


def test_split_pieces_that_look_like_devices_are_escaped():
    # The cut falls right before "CON.txt": the next piece must not be a device name.
    segment = "a" * 251 + "CON.txt"
    name = encode_member_path("p1", segment)
    assert_safe(name)
    assert decode_member_path(name) == ("p1", segment, "")


def test_too_long_path_becomes_hashed():
    path = "/".join(["segment"] * 1000)
    name = encode_member_path("p1", path)
    assert is_hashed_name(name)
    assert_safe(name)
    assert len(name) < 200
    with pytest.raises(IrreversibleNameError) as info:
        decode_member_path(name)
    assert info.value.volume == "p1"
    assert encode_member_path("p1", path, "x") != name
    assert not is_hashed_name(encode_member_path("p1", "%H/" + "0" * 64))


@pytest.mark.parametrize(
    "bad",
    [
        "manifest.jsonl",
        "files/p1",
        "files/p1/a%2%",
        "files/p1/a%",
        "files/p1/a%Hx",
        "files/p1/a%+b",
        "files/p1/x%+",
        "other/p1/x",
        "files/p1/../../x",
        "files/p1/./x",
        "files/p1//x",
        "files/p1/x/",
    ],
)
def test_decode_rejects_foreign_names(bad):
    with pytest.raises(ValueError):
        decode_member_path(bad)


def test_is_portable_segment():
    assert is_portable_segment("SYSTEM")
    assert not is_portable_segment("CON")
    assert not is_portable_segment("a:b")
    assert not is_portable_segment("x.")
    assert not is_portable_segment("")


segments = st.text(min_size=0, max_size=40)
paths = st.lists(segments, min_size=1, max_size=8).map("/".join)
surrogate_text = st.text(
    alphabet=st.characters(codec=None, categories=None), min_size=0, max_size=30
)


@settings(max_examples=400, deadline=None)
@given(volume=segments, path=paths, stream=segments)
def test_round_trip_arbitrary_unicode(volume, path, stream):
    name = encode_member_path(volume, path, stream)
    assert_safe(name)
    assert decode_member_path(name) == (volume, path, stream)


@settings(max_examples=200, deadline=None)
@given(path=st.lists(surrogate_text, min_size=1, max_size=4).map("/".join), stream=surrogate_text)
def test_round_trip_with_surrogates(path, stream):
    name = encode_member_path("v0", path, stream)
    assert_safe(name)
    assert decode_member_path(name) == ("v0", path, stream)


@settings(max_examples=100, deadline=None)
@given(
    seg=st.text(alphabet=st.sampled_from("aé日%:. CON\x00"), min_size=200, max_size=700),
    stream=st.text(alphabet=st.sampled_from("s:%. "), max_size=300),
)
def test_round_trip_long_segments(seg, stream):
    name = encode_member_path("p9", f"d/{seg}", stream)
    assert_safe(name)
    if is_hashed_name(name):
        return
    assert decode_member_path(name) == ("p9", f"d/{seg}", stream)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="%+Hh0a4F:/.<xO", min_size=1, max_size=40),
    st.text(alphabet="%+Hh0aF:.x", max_size=6),
)
def test_round_trip_percent_heavy(path, stream):
    name = encode_member_path("p1", path, stream)
    assert decode_member_path(name) == ("p1", path, stream)
    assert_safe(name)


def test_sparse_suffixes_are_reserved():
    from selective_imager.container.names import sparse_map_name, sparse_member_name, sparse_role

    plain = encode_member_path("p3", "dir/x.sparse")
    assert plain == "files/p3/dir/x%2Esparse"
    assert encode_member_path("p3", "X.Sparse.Map.Json") == "files/p3/X%2ESparse.Map.Json"
    assert sparse_role(plain) == ""
    base = encode_member_path("p3", "$Extend/$UsnJrnl", "$J")
    assert sparse_role(sparse_member_name(base)) == "member"
    assert sparse_role(sparse_map_name(base)) == "map"
    for name in (sparse_member_name(base), sparse_map_name(base)):
        assert decode_member_path(name) == ("p3", "$Extend/$UsnJrnl", "$J")
    assert decode_member_path(plain) == ("p3", "dir/x.sparse", "")
