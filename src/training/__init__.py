"""The Training tab's services: Whisper transcription (`asr`), dataset preparation (`dataset`), the training
configuration and its Validate arithmetic (`finetune`), trainer processes (`runner`) and their progress
(`progress`)."""
