//go:build go1.24

package main

import (
	"runtime"
	"sync/atomic"
)

func init() {
	modes["cleanup"] = func(o *T) {
		runtime.AddCleanup(o, func(int) { atomic.AddInt64(&ran, 1) }, 0)
	}
}
