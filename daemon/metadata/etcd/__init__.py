"""The etcd metadata backend: several berthd nodes share one cluster's metadata."""
