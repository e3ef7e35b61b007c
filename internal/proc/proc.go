// Package proc answers whether a process is alive, the same way on every
// platform chatdr runs on.
package proc
