"""`kloudctl status`: every cabinet's state at a glance (`gather`), its history in SQLite
(`history`), and a node_exporter textfile (`prometheus`)."""
