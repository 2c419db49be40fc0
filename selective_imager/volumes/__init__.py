"""Volume layers: partition tables, encrypted volumes, shadow copies; one module per format."""
