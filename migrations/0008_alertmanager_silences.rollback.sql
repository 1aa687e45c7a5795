DROP TABLE alertmanager_silences;
