//go:build !unix

package main

// lockDir is a no-op where flock is not available; the embedded S3's bolt
// file lock still keeps a second server out.
func lockDir(string) (func(), error) { return func() {}, nil }
