package lab

import (
	"os"
	"testing"
)

func TestParseDig(t *testing.T) {
	for _, tc := range []struct {
		file, qtype string
		one         bool
		data        string
	}{
		{"dig-a.txt", "A", true, "10.200.9.9"},
		{"dig-a.txt", "AAAA", false, "10.200.9.9"},
		{"dig-nodata.txt", "AAAA", false, ""},
	} {
		b, err := os.ReadFile("testdata/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		a := ParseDig(string(b))
		if a.Status != "NOERROR" || a.One(tc.qtype) != tc.one {
			t.Errorf("%s %s: %+v, One = %v, want %v", tc.file, tc.qtype, a, a.One(tc.qtype), tc.one)
		}
		if tc.data != "" && (len(a.Answers) != 1 || a.Answers[0].Data != tc.data || a.Answers[0].TTL != "30") {
			t.Errorf("%s: answers %+v, want %s TTL 30", tc.file, a.Answers, tc.data)
		}
	}
}
