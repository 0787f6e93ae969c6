"""GB/T 28181: GridPatrol as the platform that cameras and NVRs register to (SIP signalling, PS over RTP)."""
