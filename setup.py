"""weblab: classic web-infrastructure designs as real networks on one Linux machine."""
from setuptools import find_packages, setup

setup(
    name="weblab",
    version="0.1.0",
    description="Emulate web-infrastructure designs with Mininet and prove claims about them",
    python_requires=">=3.11",
    packages=find_packages(include=["weblab*", "topologies*", "controllers*", "hostapps*", "experiments*"]),
    package_data={"hostapps": ["templates/*", "webapp/*.sql", "webapp/static/*"]},
    install_requires=[
        "os-ken", "scapy", "matplotlib", "pymysql", "jinja2", "gunicorn",
    ],
    entry_points={"console_scripts": ["weblab=weblab.cli:main"]},
)
