//! Gemini generateContent (typed in a later step).
