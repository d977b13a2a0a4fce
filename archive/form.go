package archive

// FormsIntro begins every hint on what a backup may be; FormsHint is the
// whole hint readers of a backup give with an input they cannot read.
const (
	FormsIntro = "a backup is an OCI image layout: a directory, a tar file, or a gzip- or zstd-compressed tar file"
	FormsHint  = FormsIntro + " (or such a tar on standard input with \"-\")"
)

// IsTar says whether head, the first bytes of an input, begins a tar (a
// ustar or pax header: what backup writes and tar tools read).
func IsTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// IsGzip says whether head begins gzip data.
func IsGzip(head []byte) bool {
	return len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b
}

// IsZstd says whether head begins a zstd frame.
func IsZstd(head []byte) bool {
	return len(head) >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd
}
