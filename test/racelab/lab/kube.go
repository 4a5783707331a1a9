package lab

import (
	"regexp"
	"strings"
)

// DigAnswer is what dig printed for one query (+noall +comments +answer):
// the status and the answer records.
type DigAnswer struct {
	Status  string
	Answers []DigRecord
}

// DigRecord is one answer record as dig prints it.
type DigRecord struct {
	Owner, TTL, Type, Data string
}

var digStatusRE = regexp.MustCompile(`status: ([A-Z]+)`)

// ParseDig reads dig's output; comment lines (;) are skipped but for the
// status.
func ParseDig(out string) DigAnswer {
	var a DigAnswer
	if m := digStatusRE.FindStringSubmatch(out); m != nil {
		a.Status = m[1]
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 5 && !strings.HasPrefix(line, ";") && f[2] == "IN" {
			a.Answers = append(a.Answers, DigRecord{Owner: f[0], TTL: f[1], Type: f[3], Data: f[4]})
		}
	}
	return a
}

// One reports whether the answer is NOERROR with exactly one record, of
// type qtype.
func (a DigAnswer) One(qtype string) bool {
	return a.Status == "NOERROR" && len(a.Answers) == 1 && a.Answers[0].Type == qtype
}
