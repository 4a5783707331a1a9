package harness

import (
	"os"
	"strings"
)

// Tail returns the last n lines of the file at path, or a line saying why
// there is none (it is read to explain a failure, which must not fail too).
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return LastLines(string(b), n)
}

// LastLines returns the last n lines of s, without the final newline.
func LastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" || n <= 0 {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
