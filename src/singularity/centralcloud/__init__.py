"""CentralCloud: owns the bus (initialization, retention), and later analytics and learning."""
