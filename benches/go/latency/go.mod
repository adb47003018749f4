module fingpeers/latency

go 1.19
