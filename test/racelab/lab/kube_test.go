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

func TestHasDNAT(t *testing.T) {
	b, err := os.ReadFile("testdata/iptables-nat.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		comment, dest string
		want          bool
	}{
		{"kube-system/kube-dns:dns", "10.244.0.2:53", true},
		{"kube-system/kube-dns:dns", "10.244.0.3:53", false},     // no UDP DNAT to it
		{"kube-system/kube-dns:dns-tcp", "10.244.0.3:53", false}, // TCP only
	} {
		if got := HasDNAT(string(b), tc.comment, tc.dest); got != tc.want {
			t.Errorf("HasDNAT(%s, %s) = %v, want %v", tc.comment, tc.dest, got, tc.want)
		}
	}
}
