"""The live view of a running lab (`weblab ui`) and design drawings (`weblab graph`).

A read-mostly client of the lab: it reads the run's state, counters and admin sockets, and acts only
through the lab's control socket and the lab layer's own functions."""
