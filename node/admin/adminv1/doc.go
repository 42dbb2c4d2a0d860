// Package adminv1 holds the Go code generated from proto/vigil/admin/v1/admin.proto by
// protoc-gen-go (messages) and, in adminv1connect, by protoc-gen-connect-go (service).
// Do not edit the generated files: edit the .proto and run scripts/gen-proto.sh
// (`make generate`). The generated code is committed so that building needs no protoc.
//
// Usage:
//
//	req := connect.NewRequest(&adminv1.ListAgentsRequest{Selector: "site=a", Status: "active"})
//
// Invariant: every field's meaning and unit is documented in the .proto file.
package adminv1
