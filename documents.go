package storage

// documentsRoutes binds the documents endpoints (sdk.storage.db).
func (e *Engine) documentsRoutes() []route {
	return nil
}
