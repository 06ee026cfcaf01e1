package relay

import "net/http"

// deleteAttachment is DELETE /relay/v1/attachments/{id}: the creating
// device, presenting the upload token, removes the blob and its metadata
// (docs/spec/attachments.md §Delete). An unknown blob and a token that
// does not match are both 404, as for every other upload request.
func (r *Relay) deleteAttachment(w http.ResponseWriter, req *http.Request, ss *session) {
	id, ok := r.blobID(w, req)
	if !ok {
		return
	}
	tok, ok := r.uploadToken(w, req, "delete")
	if !ok {
		return
	}
	if _, ok := r.upload(w, req, ss, "delete", id, &tok); !ok {
		return
	}
	if err := r.att.store.Delete(req.Context(), id); err != nil {
		// A blob that expired or was deleted since Info is 404 too.
		r.blobError(w, "delete", err)
		return
	}
	r.att.met.requests.WithLabelValues("delete", "ok").Inc()
	w.WriteHeader(http.StatusNoContent)
}
