package main

import (
	"fmt"
	"strconv"
	"strings"
)

// setYAML sets the scalar at path (e.g. ["sidecar", "image", "digest"]) in
// a block-style YAML document, editing only that line so every comment of
// values.yaml survives into `helm show values`. The key must exist: a
// missing one means values.yaml changed shape and the release would pin
// nothing.
func setYAML(doc string, path []string, value string) (string, error) {
	lines := strings.Split(doc, "\n")
	depth := 0           // how many elements of path matched so far
	indents := []int{-1} // indentation of each matched parent
	child := 0           // indentation of the current block's direct children
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(trimmed)
		// Leaving a matched block: back up to the parent it belongs to.
		for depth > 0 && indent <= indents[depth] {
			depth--
			indents = indents[:depth+1]
			child = indent
		}
		if child < 0 { // the first line of a block sets its children's indentation
			child = indent
		}
		if indent != child {
			continue
		}
		key, rest, ok := strings.Cut(trimmed, ":")
		if !ok || key != path[depth] || (rest != "" && rest[0] != ' ') {
			continue
		}
		if depth == len(path)-1 {
			lines[i] = line[:indent] + key + ": " + strconv.Quote(value)
			return strings.Join(lines, "\n"), nil
		}
		depth++
		indents = append(indents, indent)
		child = -1
	}
	return "", fmt.Errorf("key %s not found", strings.Join(path, "."))
}
