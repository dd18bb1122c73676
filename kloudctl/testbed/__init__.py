"""Test cabinets: real Debian 12 systems in podman containers.

- `kloudctl.testbed.image.ensure_image(extra_packages=()) -> str`: the image's full name
  (``localhost/kloudctl-debian:12-<recipe hash>``), built once per recipe.
- `kloudctl.testbed.cabinets.running(names, prefix=..., state_dir=...)`: a context manager
  giving a `Testbed` (containers, addresses, SSH key, known_hosts), removed afterwards.
- `kloudctl.testbed.bed`: the fleet's testbed behind `kloudctl testbed up|status|down`.
"""
