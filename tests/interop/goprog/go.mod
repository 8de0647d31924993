module github.com/pg-jobqueue/interop

go 1.26.0
