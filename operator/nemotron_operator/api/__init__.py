"""The NemotronDeployment API: its types, the names it shares with the cluster, its CRD."""
