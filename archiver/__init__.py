"""videosdk-archiver: every VideoSDK recording copied, verified and catalogued in storage you own."""

__version__ = "0.1.0"
