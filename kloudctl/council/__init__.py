"""The council's read-outs of the status history: the cabinet report (HTML for people,
Markdown for e-mail, JSON for tools), the usage statement of level-2 clients (with its
CSV), and the fleet report for Kloud'Ici. French first; nothing here talks to a cabinet."""
