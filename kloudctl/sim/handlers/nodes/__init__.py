"""The methods under `/nodes/{node}`: the node itself, its network, storage and tasks, and
its QEMU guests."""
