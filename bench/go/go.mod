module coil/bench/go

go 1.19
