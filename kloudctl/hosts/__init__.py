"""Cabinet hosts through Ansible: the inventory built from the model, the runner, bootstrap,
the calendars of the timers roles install (`timers`)."""
