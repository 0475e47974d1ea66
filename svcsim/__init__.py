"""svcsim: a discrete-event simulator of the Kubernetes Service data plane."""

__version__ = "0.1.0"
