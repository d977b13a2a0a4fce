// Package registrytest runs registries for regvault's tests and demo, and
// pushes deterministic content into them.
//
// Two registries, both on free 127.0.0.1 ports, both returned as a
// *Server with the same methods (Host, Target, Repository, Stats,
// ResetStats, Close):
//
//   - StartInProcess: go-containerregistry's in-memory registry in this
//     process. Fast (a test takes milliseconds). Referrers API on by
//     default (WithReferrersAPI(false) for a registry without it);
//     optional TLS, client certificates, basic authentication, a
//     server-side tag page size, and WithHandler to wrap the handler (to
//     corrupt or fail responses).
//   - StartDistribution: the CNCF distribution registry v3.1.2 as a
//     process ($REGVAULT_DISTRIBUTION, built by `make test`), with
//     optional htpasswd authentication, TLS and client certificates. It
//     has no Referrers API. It starts in about 0.2 s.
//
// The testing.TB wrappers NewInProcess and NewDistribution fail the test on
// error and close the server when the test ends; NewDistribution skips the
// test when the binary is missing (fails under CI). Non-test code (the
// demo) uses the Start functions and Close.
//
// Every server counts the requests it gets (Stats: by method and kind,
// status codes, body bytes in and out, accepted mounts). For distribution
// the counting is done by a reverse proxy in front of it: Host is the
// proxy, BackendHost the process itself.
//
// Fixtures push content with oras-go: Bytes and NewReader make
// deterministic content, PushBlob, PushImage, PushImageSpec,
// PushDockerImage, PushIndex, PushDockerManifestList and PushReferrer push
// it, SeedSample pushes the sample set (three repositories, shared base
// layer, an index, a Docker manifest list, SBOMs, a nested signature).
//
// # go-containerregistry's registry and the compatibility layer
//
// What ggcr's registry (v0.22.1) does by itself, seen in its source and
// checked by this package's tests with WithoutFixes:
//
//   - Tag list: sorted; honours n and last, but never sends a Link header,
//     so a client that follows Link (oras-go does) and asks for n tags sees
//     only the first page. A last at or after the final tag returns the
//     whole list again instead of an empty one. Tags of the referrers tag
//     schema (sha256-<hex>) are listed like any tag.
//   - Catalog: no pagination, random order.
//   - Blobs are one global store, not per repository: a blob pushed to one
//     repository is found (HEAD/GET 200) in every repository, including
//     ones that do not exist.
//   - Cross-repository mount (POST ?mount=&from=) is ignored: the answer is
//     always 202 with a new upload session, never 201.
//   - Range: only "bytes=START-END"; an open range "bytes=START-" is
//     answered 416. No Accept-Ranges header.
//   - Referrers API (WithReferrersSupport): no OCI-Subject header on a
//     manifest push, so oras-go concludes the API is missing and also
//     writes the sha256-<hex> tag-schema index; the listing reports the
//     config media type as artifactType (not the manifest's artifactType,
//     so an artifact with the empty config shows
//     application/vnd.oci.empty.v1+json), ignores the artifactType filter
//     and comes in random order.
//   - Manifests are not blobs: GET /v2/<name>/blobs/<manifest digest> is
//     404 (in distribution v3.1.2 too).
//   - An index is accepted only if its child manifests are already in the
//     repository; image manifests are not checked against their blobs.
//   - DELETE of a manifest by digest leaves its tags in place.
//
// Unless WithoutFixes is given, a compatibility layer in front of it makes
// it behave like a conforming registry (as distribution does where both
// apply): tag-list pagination with Link headers and a correct last; blobs
// visible only in the repositories they were pushed or mounted to;
// cross-repository mount answered 201 when the from repository has the
// blob (202 and an upload session otherwise, as distribution); open byte
// ranges and Accept-Ranges; and with the Referrers API, the OCI-Subject
// header on manifest pushes with a subject, and a referrers listing with
// each manifest's artifactType, the artifactType filter (with
// OCI-Filters-Applied) and a fixed order (by digest).
//
// # Distribution v3.1.2
//
// Checked by this package's tests: no Referrers API (GET
// /v2/<name>/referrers/<digest> is 404, and no OCI-Subject header), so
// oras-go keeps referrers in sha256-<hex> tag-schema indexes, which the tag
// list shows; tag lists with n are paginated with Link headers (n is
// clamped to tags.maxtags, default 1000; without n every tag comes in one
// answer); cross-repository mount answers 201 when the from repository
// has the blob; Range, open ranges included, works.
//
// # Example
//
//	func TestBackup(t *testing.T) {
//		src := registrytest.NewInProcess(t)                  // or NewDistribution(t, registrytest.DistConfig{})
//		sample := registrytest.Seed(t, src, registrytest.SampleOptions{})
//		src.ResetStats()
//		// ... run regvault against src.Host() (plain HTTP: --plain-http) ...
//		st := src.Stats()
//		if got, want := st.Count(http.MethodGet, registrytest.KindBlob), int64(len(sample.Unique())); got > want {
//			t.Errorf("%d blob GETs, want at most %d", got, want)
//		}
//	}
package registrytest
