// Package binwatchv1 contains the Go code generated from binwatch.proto.
package binwatchv1

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative binwatch.proto"
