"""The program: the `fleetbot` command, the offline demo and its terminal chat."""
