package main

import "testing"

func TestSetAnnotation(t *testing.T) {
	const value = "- name: webhook\n  image: x\n"
	tests := []struct{ name, doc, want string }{
		{"no annotations block", "name: dnsguard\nversion: 0.2.0\n",
			"name: dnsguard\nversion: 0.2.0\nannotations:\n  artifacthub.io/images: |\n    - name: webhook\n      image: x\n"},
		{"other annotations kept", "name: dnsguard\nannotations:\n  artifacthub.io/license: Apache-2.0\nversion: 0.2.0\n",
			"name: dnsguard\nannotations:\n  artifacthub.io/images: |\n    - name: webhook\n      image: x\n  artifacthub.io/license: Apache-2.0\nversion: 0.2.0\n"},
		// An entry of the source Chart.yaml is replaced, not duplicated.
		{"old entry replaced", "annotations:\n  artifacthub.io/images: |\n    - name: old\n      image: y\n  artifacthub.io/license: MIT\n",
			"annotations:\n  artifacthub.io/images: |\n    - name: webhook\n      image: x\n  artifacthub.io/license: MIT\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := setAnnotation(tc.doc, "artifacthub.io/images", value); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
