"""The server's small web port: file host (soju.im/FILEHOST), front page, /metrics."""
