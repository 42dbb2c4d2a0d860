package gossip

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// hangAfter is when the package's tests are taken to hang; it is below make test's -timeout so
// that the watchdog, not the test binary, reports it.
const hangAfter = 10 * time.Minute

// TestMain runs the tests under a watchdog. When the binary's own -timeout fires, Go prints
// every goroutine and the stuck test's stack scrolls far above the end of the output, which is
// all a CI log keeps; the watchdog prints the goroutines running test code last instead.
func TestMain(m *testing.M) {
	t := time.AfterFunc(hangAfter, func() {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var stuck [][]byte
		for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte("_test.go:")) && !bytes.Contains(g, []byte("gossip.TestMain")) {
				stuck = append(stuck, g)
			}
		}
		fmt.Fprintf(os.Stderr, "gossip tests still running after %s; goroutines in test code:\n", hangAfter)
		for _, g := range stuck {
			fmt.Fprintf(os.Stderr, "%s\n\n", g)
		}
		os.Exit(2)
	})
	code := m.Run()
	t.Stop()
	os.Exit(code)
}
