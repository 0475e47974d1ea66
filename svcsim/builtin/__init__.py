"""Scenarios shipped inside the package (the default of ``svcsim run``)."""
