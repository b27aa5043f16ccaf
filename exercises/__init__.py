"""Exercises for courses: each a YAML file here (a task on a design, maybe started broken by a
scenario, and the checks that grade a live lab); the code that reads and runs them beside them.
The checker talks to a running lab through the LiveLab protocol (exercises.checks), never the lab
itself: the CLI hands it one (weblab.running.Attached)."""
