"""The ledger: a real database recording every event, recording file and copy job."""
