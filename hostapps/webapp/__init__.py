"""foobar.com: the small real web application that lab app servers run under gunicorn."""
