"""PostgreSQL / TimescaleDB: schema migrations and the writers the engines share."""
