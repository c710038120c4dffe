"""HTTP in: the Sinch XML API, the status API, health. Writes rows and jobs; never sends."""
