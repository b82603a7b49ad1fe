//go:build !race

package storage_test

// raceEnabled is set when the tests run under the race detector, which
// makes the in-process FerretDB (SQLite compiled from C to Go) many times
// slower: tests that push many documents through it size down.
const raceEnabled = false
