package registry

import "testing"

func TestMaskURLs(t *testing.T) {
	for in, want := range map[string]string{
		`PUT "http://h:5000/v2/r/blobs/uploads/u1?_state=c2VjcmV0&digest=sha256%3Aab": response status code 400`: `PUT "http://h:5000/v2/r/blobs/uploads/u1?_state=***&digest=sha256%3Aab": response status code 400`,
		`Patch https://user:pw@h/v2/r/blobs/uploads/u1?_state=c2VjcmV0: EOF`:                                     `Patch https://h/v2/r/blobs/uploads/u1?_state=***: EOF`,
		`GET "https://h/v2/r/tags/list?last=v1&n=100": 503`:                                                      `GET "https://h/v2/r/tags/list?last=v1&n=100": 503`,
		`no URL here: _state is a word`:                                                                          `no URL here: _state is a word`,
		`two: http://a/x?token=t1 and http://b/y?mount=sha256:1&from=r&_state=s2.`:                               `two: http://a/x?token=*** and http://b/y?_state=***&from=r&mount=sha256%3A1.`,
	} {
		if got := MaskURLs(in); got != want {
			t.Errorf("MaskURLs(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}
