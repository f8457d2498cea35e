module ssegate-peer-go

go 1.19
