// Package bridgev1 is the generated Go code of bridge.proto, the control
// plane between agentd and its bridge plugins.
package bridgev1

// The generators are go.mod tools, so their versions are pinned with the
// module; `go tool -n` prints the cached binary's path for protoc.
//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative bridge.proto"
