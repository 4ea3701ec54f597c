package config

import "strings"

// nearest returns the candidate closest to s by edit distance, or "" when
// none is close enough to be a plausible typo.
func nearest(s string, candidates []string) string {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		// A shortened or lengthened word ("inf", "warning").
		if lc := strings.ToLower(c); len(ls) >= 3 && len(lc) >= 3 && (strings.HasPrefix(lc, ls) || strings.HasPrefix(ls, lc)) {
			return c
		}
	}
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > maxTypo(s) {
		return ""
	}
	return best
}

// maxTypo is how many edits still count as a typo of a word of s's length.
func maxTypo(s string) int {
	if n := len(s) / 3; n > 2 {
		return n
	}
	return 2
}

// editDistance is the Levenshtein distance of a and b, with a transposition
// of two adjacent characters counting as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// suggestKey proposes a known dotted key for an unknown key leaf in
// section sec (sec may be unknown too, or "" for a top-level key).
func suggestKey(sec, leaf string) string {
	if leaf == "" {
		return nearest(sec, sections)
	}
	// Same section first, then a known leaf anywhere (a key put in the
	// wrong section).
	var same, all []string
	for _, f := range schema {
		if f.section() == sec {
			same = append(same, f.leaf())
		}
		all = append(all, f.key)
	}
	if n := nearest(leaf, same); n != "" {
		return sec + "." + n
	}
	for _, f := range schema {
		if strings.EqualFold(f.leaf(), leaf) {
			return f.key
		}
	}
	if s := nearest(sec, sections); s != "" && s != sec {
		return nearest(s+"."+leaf, all)
	}
	return ""
}
