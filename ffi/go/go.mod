module dlm.example/dlm

go 1.22
