"""SMS and MMS channels: the Twilio connector (`twilio`) and the segment arithmetic SMS bills by."""
