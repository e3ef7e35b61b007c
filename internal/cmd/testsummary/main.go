// Command testsummary reads `go test -json` from stdin, prints one line per
// package and the output of every failing test, and ends with the line
// "N passed, N failed, N skipped". It exits 1 when any test, package or build
// failed, or when no test ran at all.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	passed, failed, skipped := 0, 0, 0
	pkgFailed := false
	outputs := map[string][]string{} // package/test -> output lines
	var failures []string
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		var ev event
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &ev) != nil {
			fmt.Println(line) // compiler errors and other plain output
			continue
		}
		key := ev.Package + " " + ev.Test
		switch ev.Action {
		case "output", "build-output":
			outputs[key] = append(outputs[key], ev.Output)
		case "build-fail":
			pkgFailed = true
			fmt.Print(strings.Join(outputs[key], ""))
		case "pass":
			if ev.Test == "" {
				fmt.Printf("ok    %s (%.1fs)\n", ev.Package, ev.Elapsed)
			} else {
				passed++
			}
			delete(outputs, key)
		case "skip":
			if ev.Test != "" {
				skipped++
			} else {
				fmt.Printf("--    %s (no tests)\n", ev.Package)
			}
			delete(outputs, key)
		case "fail":
			if ev.Test == "" {
				pkgFailed = true
				fmt.Printf("FAIL  %s (%.1fs)\n", ev.Package, ev.Elapsed)
				// Output outside any test (panics, TestMain, build errors).
				fmt.Print(strings.Join(outputs[key], ""))
			} else {
				failed++
				failures = append(failures, key)
				fmt.Printf("--- FAIL %s\n%s", key, strings.Join(outputs[key], ""))
			}
			delete(outputs, key)
		}
	}
	if len(failures) > 0 {
		sort.Strings(failures)
		fmt.Println("\nfailed tests:")
		for _, f := range failures {
			fmt.Println("  " + f)
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed || passed == 0 {
		os.Exit(1)
	}
}
