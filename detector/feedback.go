package detector

// FeedbackModel is implemented by models that can learn from an operator's verdict that their
// latest high score was a false positive. Feedback is told the time of the alert; the model
// folds what it scored then into what it considers normal, so the same input scores lower
// afterwards. Models that cannot learn this way simply do not implement it.
type FeedbackModel interface {
	Model
	Feedback(t int64)
}
