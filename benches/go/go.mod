module fingpeers/fincycle

go 1.19
