//go:build !unix

package main

// lockDir is a no-op where flock is not available: nothing keeps a second
// server off the same data directory there.
func lockDir(string) (func(), error) { return func() {}, nil }
