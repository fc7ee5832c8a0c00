"""The sinks: Kafka topics into MySQL (``mysql_sink``) and ClickHouse
(``clickhouse_sink``), with the schema migrations they apply on start (``migrate``)."""
